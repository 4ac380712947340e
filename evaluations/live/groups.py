"""Channel-layer group names: who hears which run events."""

from __future__ import annotations


def run_group(run_id: int) -> str:
    return f"run-{run_id}"


def user_group(user_id: int) -> str:
    return f"user-{user_id}"


# Run lists of users who read other people's runs: reviewers and admins (every run), and
# teammates (runs shared with their team). evaluations/live/selectors.py says who joins which.
ALL_RUNS_GROUP = "runs-all"


def team_group(team_id: int) -> str:
    return f"team-{team_id}"


# Every open websocket listens here for "check again who may see what" (access_changed): access
# changes are rare admin or owner actions, so one broadcast and a query per open socket is cheap, and
# no case (a teammate of a former team, a reviewer turned researcher, ...) can be missed.
ACCESS_GROUP = "access"
