"""One module per command: parse the options, call one service function, render the result."""
