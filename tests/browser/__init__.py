"""Browser tests: a real server process driven through Debian's chromium."""
