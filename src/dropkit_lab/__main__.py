import sys

from dropkit_lab.cli import main

sys.exit(main())
