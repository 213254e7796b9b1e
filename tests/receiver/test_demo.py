"""`replywindow demo` plays its day end to end over real loopback HTTP."""

from __future__ import annotations

from click.testing import CliRunner

from receiver.cli import main


def test_the_demo_tells_the_day_and_every_message_reaches_its_outcome() -> None:
    result = CliRunner().invoke(main, ["demo"], env={"REPLYWINDOW_DATABASE_URL": ""})

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any("window open" in line for line in lines)
    assert any("route custom, accepted, then read" in line for line in lines)
    assert any("window closed" in line for line in lines)
    assert any("route template (window_closed), then delivered" in line for line in lines)
    assert any("then failed: 客户已删除" in line for line in lines)
    assert any("an SMS to Alice -> accepted, then delivered" in line for line in lines)
    table = lines[lines.index("What happened (GET /v1/messages/{id}):") + 2:]
    assert [row.split()[1:4] for row in table] == [
        ["whatsapp", "custom", "read"], ["whatsapp", "template", "delivered"],
        ["wecom", "custom", "failed"], ["sms", "sms", "delivered"]]
