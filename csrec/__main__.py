import sys

from csrec.cli import main

sys.exit(main())
