from agentops_train.cli import main

raise SystemExit(main())
