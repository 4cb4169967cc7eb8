"""``python -m bot eval faults``: the campaign's report, with short delays (the command's
default holds answers back 20 s, as the issue's campaign did)."""

from __future__ import annotations

from bot.faulttest import eval_faults, format_faults


def test_eval_faults_reports_the_campaign_and_meets_its_targets(seed_settings, seed_answerer):
    report = eval_faults(seed_settings, delay=1.0, answerer=seed_answerer)
    hostile, corrupt, telegram, leftovers = (report[k] for k in ("hostile_files", "corrupt_index", "telegram", "leftovers"))
    assert hostile["hostile"] >= 8 and hostile["reported"] == hostile["hostile"] and hostile["unreported"] == []
    assert hostile["indexed"] == hostile["good"] == 3 and hostile["hostile_indexed"] == [] and not hostile["secret_quoted"]
    assert corrupt["kinds"] == 7 and corrupt["refused"] == 7, corrupt["detail"]
    assert telegram["faults_total"] == 17 and telegram["questions"] == 20
    assert telegram["delivered"] == 20 and telegram["duplicates"] == 0 and telegram["false_apologies"] == 0
    assert leftovers["leftovers_after_next_build"] == 0 and leftovers["new_build_serves"]
    assert report["passed"]
    text = format_faults(report)
    assert "answers delivered                20/20" in text and "corrupt index kinds refused      7/7" in text
    assert text.rstrip().endswith("PASS")
