from edmem.cli import main

raise SystemExit(main())
