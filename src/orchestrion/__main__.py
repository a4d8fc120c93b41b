from orchestrion.cli import main

main()
