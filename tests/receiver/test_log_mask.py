"""Every log line the service writes goes through the mask, tracebacks included: an exception's
own text can carry a phone number (PostgreSQL's DETAIL lines do, whatever hide_parameters
hides), and an error's traceback must not put it in the log."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

from receiver import logging_setup

PHONES = ("91856321412", "91856321432")
# What PostgreSQL says about a unique violation, bound parameters hidden or not.
PG_DETAIL = ('duplicate key value violates unique constraint "uq_conversations"\n'
             "DETAIL:  Key (channel, account, customer)=(whatsapp, 91856321412, 91856321432) "
             "already exists.")


def _record(message: str, *args: object, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.LogRecord("receiver.ingest", logging.ERROR, __file__, 1, message, args,
                             exc_info)


def _raised(message: str) -> BaseException:
    try:
        raise RuntimeError(message)
    except RuntimeError as exc:
        return exc


def test_a_traceback_is_masked_and_the_exception_kept() -> None:
    exc = _raised(PG_DETAIL)
    record = _record("could not store %s bodies", 3, exc=exc)

    assert logging_setup.LogMask().filter(record) is True

    line = logging.Formatter("%(levelname)s %(name)s %(message)s").format(record)
    assert "could not store 3 bodies" in line
    assert "duplicate key value" in line and "…1412, …1432" in line
    assert not any(phone in line for phone in PHONES)
    assert record.exc_info is not None and record.exc_info[1] is exc  # for other handlers


def test_keys_secrets_and_tokens_in_paths_are_masked_anywhere() -> None:
    record = _record("pushed with %s, key %s, from %s", "whsec_c2VjcmV0c2VjcmV0",
                     "rwk_AbC-12_xyz", "/webhooks/itnio/sms/s3cret-token?x=1")

    logging_setup.LogMask().filter(record)

    assert record.getMessage() == ("pushed with whsec_***, key rwk_***, from "
                                   "/webhooks/itnio/sms/***?x=1")


def test_masking_twice_changes_nothing_more() -> None:
    record = _record("to %s", PHONES[0], exc=_raised(PG_DETAIL))
    mask = logging_setup.LogMask()
    mask.filter(record)
    once = (record.getMessage(), record.exc_text)
    mask.filter(record)

    assert (record.getMessage(), record.exc_text) == once


def test_serve_masks_uvicorns_errors_and_the_apps_records(tmp_path: Path) -> None:
    # In a process of its own: dictConfig rewires logging for the whole process.
    script = (
        "import logging, logging.config\n"
        "from receiver.logging_setup import uvicorn_log_config\n"
        "logging.config.dictConfig(uvicorn_log_config())\n"
        f"detail = {PG_DETAIL!r}\n"
        "try:\n"
        "    raise RuntimeError(detail)\n"
        "except RuntimeError:\n"
        "    logging.getLogger('uvicorn.error').exception('Exception in ASGI application')\n"
        "    logging.getLogger('receiver.ingest').error('could not store', exc_info=True)\n"
        "logging.getLogger('sender.service').info('sent to %s', '91856321432')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=Path(__file__).parents[2], timeout=60, check=True)

    output = done.stdout + done.stderr
    assert "Exception in ASGI application" in output
    assert "receiver.ingest could not store" in output
    assert output.count("DETAIL:  Key (channel, account, customer)=(whatsapp, …1412, …1432)") == 2
    assert "sender.service sent to …1432" in output
    assert not any(phone in output for phone in PHONES), output
