from bootverify.cli import main

raise SystemExit(main())
