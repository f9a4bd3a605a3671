from bachd.cli import main

main()
