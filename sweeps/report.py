"""The paper's tables and figures from a finished sweep, and the robustness curve on synthetic data.

    python sweeps/report.py RUN_DIR [--data-dir DIR] [--with OTHER_RUN_DIR ...] [--out DIR]
                            [--robustness-dir DIR]
    python sweeps/report.py --robustness OUT_DIR [--noise 0,0.1,0.2,0.4] [--epochs N] [--backbone B]
                            [--methods base,softrec,csrec-m,csrec-d,csrec-t] [--synthetic KEY=VALUE ...]
                            [--set KEY=VALUE ...]

See :mod:`csrec.report.cli` (``--help`` lists every option).
"""

import sys

from csrec.report.cli import main

if __name__ == "__main__":
    sys.exit(main())
