"""The suite's many short runs write no report.html (RunOptions.report's default
follows ORBIT_HIL_REPORT; subprocesses inherit it). tests/test_report*.py turn it
back on where a report is what they test."""

import os

os.environ["ORBIT_HIL_REPORT"] = "0"
