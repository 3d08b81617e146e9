"""The program runner under Pulumi's mocks (engine/program.py), for the
tests: the graph tests, the plan tests and the lab share it with `make
review`."""
from engine.program import (ROOT, SECRET_SIG, SECRET_VALUE, RecordingMonitor, Registration, Run, config_bag,
                            is_secret, run_program, unwrap)

__all__ = ["ROOT", "SECRET_SIG", "SECRET_VALUE", "RecordingMonitor", "Registration", "Run", "config_bag",
           "is_secret", "run_program", "unwrap"]
