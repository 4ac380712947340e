"""Start the Procfile's processes with honcho, giving the worker time to stop gracefully.

honcho SIGKILLs every process 5 s after the first one stops; a stopping worker needs its runs'
grace (CRUCIBLE_STOP_GRACE_SECONDS) and a little more to end them truthfully.
"""

import os
import sys

import honcho.manager
from honcho.command import main

honcho.manager.KILL_WAIT = float(os.environ.get("CRUCIBLE_STOP_GRACE_SECONDS", "30")) + 15
sys.argv = ["honcho", *sys.argv[1:]]
main()
