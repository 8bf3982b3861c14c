import sys

from genforge.cli import main

sys.exit(main())
