"""The drill scorecard's report: JSON round trip, Markdown, missed and unexpected."""

from __future__ import annotations

from simulators.scorecard import Scorecard, ScoreRow, UnexpectedAlert


def _card() -> Scorecard:
    return Scorecard(
        drill_id=4, scenario="kitchen_fire", site="north", device_id="smoke-1",
        started_at=1764120000.0, onset_ts=1764120003.0,
        rows=(ScoreRow(device_id="smoke-1", hazard="smoke", expected_severity="red",
                       alert_id=9, severity="red", detected_s=1.25,
                       notified_s={"sms": 2.5, "broadcast": 3.0}, acknowledged_s=40.0,
                       resolved_s=None),
              ScoreRow(device_id="smoke-1", hazard="heat", expected_severity="red")),
        unexpected=(UnexpectedAlert(alert_id=11, device_id="gas-2", hazard="gas",
                                    severity="orange", opened_s=12.0),))


def test_scorecard_survives_its_json_and_names_what_was_missed() -> None:
    card = _card()
    body = card.to_json()
    assert body["missed"] == ["smoke-1/heat"]
    assert Scorecard.from_json(body) == card
    assert [r.hazard for r in card.missed] == ["heat"]


def test_markdown_lists_every_time_from_onset() -> None:
    text = _card().markdown()
    assert "# 演练成绩单 Drill scorecard #4: kitchen_fire" in text
    assert ("| smoke-1 | 烟雾报警 Smoke alarm (`smoke`) | red | red | 1.2 s | "
            "broadcast 3.0 s, sms 2.5 s | 40.0 s | — |" in text)
    heat = "温度异常疑似火情 Heat alarm, possible fire (`heat`)"
    assert f"| smoke-1 | {heat} | red | missed | — | — | — | — |" in text
    assert f"## Missed\n\n- smoke-1: {heat} (red)" in text
    assert ("- #11 gas-2: 燃气泄漏 Gas leak (`gas`) (orange), opened 12.0 s after the drill "
            "started" in text)
