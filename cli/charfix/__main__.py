from charfix.app import run

run()
