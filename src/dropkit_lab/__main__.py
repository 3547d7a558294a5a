import sys

from dropkit_cli import main

sys.exit(main())
