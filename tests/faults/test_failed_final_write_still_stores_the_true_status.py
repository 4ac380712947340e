"""A database error when a run's result is stored: a PostgreSQL trigger refuses every UPDATE of
evaluations_run that sets a terminal status, from before the run starts until the test drops it —
2 s after the code ended (the worker's retries outlast it), or longer than the worker retries
(CRUCIBLE_FINAL_WRITE_RETRY_SECONDS: the reconciler stores it). Either way the run ends with its
true status, succeeded, and its full output."""

from __future__ import annotations

import time

import pytest

from tests.faults.conftest import FINAL_WRITE_RETRY_SECONDS
from tests.faults.support import TERMINAL, program

pytestmark = pytest.mark.faults

REFUSE_TERMINAL_UPDATES = """
CREATE FUNCTION fault_refuse_terminal() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'fault injected: run % may not become %', NEW.id, NEW.status;
END $$;
CREATE TRIGGER fault_refuse_terminal BEFORE UPDATE ON evaluations_run FOR EACH ROW
    WHEN (NEW.status = ANY(ARRAY[{terminal}]) AND NEW.status IS DISTINCT FROM OLD.status)
    EXECUTE FUNCTION fault_refuse_terminal();
""".format(terminal=", ".join(f"'{s}'" for s in sorted(TERMINAL)))
DROP = "DROP TRIGGER fault_refuse_terminal ON evaluations_run; DROP FUNCTION fault_refuse_terminal();"


@pytest.mark.parametrize("refused_for", [2, FINAL_WRITE_RETRY_SECONDS + 4], ids=["within-retries", "past-retries"])
def test_a_run_whose_result_is_refused_for_a_while_still_ends_succeeded(faults, refused_for):
    faults.stack(workers=1)
    faults.sql(REFUSE_TERMINAL_UPDATES)
    run_id = faults.api.submit(program('import time\nprint("start", flush=True)\ntime.sleep(1)\nprint("done")\n'))
    faults.api.wait_output(run_id, "done")

    time.sleep(refused_for)
    assert faults.run_row(run_id)["status"] == "running", "a terminal status got past the trigger"
    faults.sql(DROP)

    run = faults.api.wait(run_id, timeout=60)
    assert (run["status"], run["exit_code"], run["stdout"]) == ("succeeded", 0, "start\ndone\n"), (run, faults.logs())
    faults.check_end_state()
