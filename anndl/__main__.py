import sys

from anndl.cli import main

sys.exit(main())
