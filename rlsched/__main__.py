import sys

from rlsched.app.cli import main

sys.exit(main())
