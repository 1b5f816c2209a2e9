import sys

from rlsched.cli import main

sys.exit(main())
