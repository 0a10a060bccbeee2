"""Fault-injection (chaos) suite, issue 11 §7: the real system under SIGKILL."""
