"""The read side every command shares: pages of facts diagnosed (scan), which jobs a command looks at
(selection, users), and the views built on them (user, by character, summary, report)."""
