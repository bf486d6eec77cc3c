import sys

from mailfort.cli import main

sys.exit(main())
