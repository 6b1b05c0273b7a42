from cnnbench.report import main

raise SystemExit(main())
