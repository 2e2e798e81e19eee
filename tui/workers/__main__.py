import sys

from tui.workers.worker import main

sys.exit(main(sys.argv[1:]))
