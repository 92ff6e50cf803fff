from bootverify.entry import main

raise SystemExit(main())
