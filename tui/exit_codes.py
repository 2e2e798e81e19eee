"""The process exit codes, the same for the dashboard, headless runs and `history`."""

EXIT_OK = 0  # every stream done
EXIT_FAILED = 1  # a stream failed; its partial answer is kept
EXIT_USAGE = 2  # a usage or configuration error, told in one line
EXIT_INTERRUPTED = 130  # interrupted (Ctrl+C, or quitting with live streams)
