import sys

from certdrop.cli import main

sys.exit(main())
