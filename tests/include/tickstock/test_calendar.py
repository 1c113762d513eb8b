from __future__ import annotations

from datetime import UTC, date, datetime

from tickstock import calendar


def test_started_sessions_keeps_only_sessions_whose_open_has_passed():
    days = calendar.sessions(date(2025, 12, 1), date(2025, 12, 5))
    assert calendar.started_sessions(days, datetime(2025, 12, 3, 14, 30, tzinfo=UTC)) == days[:3]  # the open
    assert calendar.started_sessions(days, datetime(2025, 12, 3, 14, 29, tzinfo=UTC)) == days[:2]
    assert calendar.started_sessions(days, datetime(2026, 1, 1, tzinfo=UTC)) == days
    assert calendar.started_sessions(days, datetime(2025, 11, 1, tzinfo=UTC)) == []
    assert calendar.started_sessions([], datetime(2025, 12, 3, tzinfo=UTC)) == []
