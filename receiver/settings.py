"""The only module that reads the environment (and `.env`)."""

from __future__ import annotations

from datetime import timedelta
from functools import cached_property, lru_cache
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sender.outcomes import SendConfig

MAX_BODY_BYTES = 1024 * 1024


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="REPLYWINDOW_", env_file=".env", extra="ignore", populate_by_name=True
    )

    database_url: str = "sqlite:///./replywindow.db"
    webhook_token: SecretStr | None = None
    api_keys: str = ""

    itnio_base_url: str = "https://api.itniotech.com"
    itnio_api_key: SecretStr | None = None
    itnio_api_secret: SecretStr | None = None
    itnio_wa_app_id: str | None = None
    itnio_sms_app_id: str | None = None

    yzj_base_url: str = "https://oapi-yzj.miaokol.com"
    yzj_app_id: str | None = None
    yzj_app_secret: SecretStr | None = None
    yzj_encoding_aes_key: SecretStr | None = None
    # Staff accounts (serving wxids) this service speaks for; callbacks for others are flagged.
    yzj_accounts: str = ""

    window_margin_seconds: int = Field(default=120, ge=0, lt=24 * 3600)
    wecom_confirm_seconds: int = Field(default=600, ge=0)
    fallback_template: str | None = None
    bot_webhook_url: str | None = None
    bot_webhook_secret: SecretStr | None = None

    # How long a vendor call may take; past it a WhatsApp send is held as unknown.
    vendor_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    # An open WhatsApp window with an unanswered inbound message, closing within this long,
    # is announced to the bot once (window.expiring).
    window_expiring_seconds: int = Field(default=3600, ge=60, le=24 * 3600)
    # How fast one WeCom staff account may send (spread with delayed_time).
    wecom_messages_per_minute: int = Field(default=20, ge=1, le=600)

    # Where the service is reachable, for the webhook URLs printed at start.
    public_url: str = "http://localhost:8000"
    run_scheduler: bool = True
    # Where stored webhook bodies are applied: a child process of the server (its own core and
    # interpreter, so applying never slows the acknowledgements), or a thread of the server.
    applier: Literal["process", "thread"] = "process"

    @field_validator("webhook_token", "yzj_encoding_aes_key", "bot_webhook_secret", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    # Read for every request or event: split once per value (see _listed).
    @property
    def env_api_keys(self) -> tuple[str, ...]:
        return _listed(self.api_keys)

    @property
    def yzj_account_ids(self) -> frozenset[str]:
        return _listed_set(self.yzj_accounts)

    def is_itnio_app_configured(self, app_id: str | None, *, channel: str) -> bool:
        """An appId we were not told about is flagged; with none configured, all are ours."""
        configured = self.itnio_wa_app_id if channel == "whatsapp" else self.itnio_sms_app_id
        if not configured or app_id is None:
            return True
        return app_id == configured

    @cached_property
    def _send_config(self) -> SendConfig:
        return SendConfig(
            margin=timedelta(seconds=self.window_margin_seconds),
            fallback_template=SendConfig.parse_fallback(self.fallback_template),
            wecom_confirm=timedelta(seconds=self.wecom_confirm_seconds),
            wecom_gap=timedelta(seconds=60 / self.wecom_messages_per_minute),
            push_events=bool(self.bot_webhook_url),
            expiring_warning=timedelta(seconds=self.window_expiring_seconds),
        )

    def send_config(self) -> SendConfig:
        """The sending rules' settings, built once (they are read for every event)."""
        return self._send_config

    def as_plain(self) -> dict[str, Any]:
        """Every field with secrets revealed, for handing these settings to a child process
        (over a pipe, never the command line)."""
        return {name: value.get_secret_value() if isinstance(value, SecretStr) else value
                for name, value in self}

    def is_yzj_account_configured(self, wxid: str | None) -> bool:
        accounts = self.yzj_account_ids
        return not accounts or wxid in accounts


@lru_cache(maxsize=16)
def _listed(value: str) -> tuple[str, ...]:
    """A comma-separated setting's items."""
    return tuple(item.strip() for item in value.split(",") if item.strip())


@lru_cache(maxsize=16)
def _listed_set(value: str) -> frozenset[str]:
    return frozenset(_listed(value))
