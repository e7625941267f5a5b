"""``python -m minicfg ...`` is the ``minicfg`` command; torchrun starts data-parallel training this way:
``torchrun --nproc_per_node 2 -m minicfg train ...``."""

import sys

from .cli import main

sys.exit(main())
