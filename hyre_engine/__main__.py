from hyre_engine.cli import main

raise SystemExit(main())
