"""CLI tests: model code that prints terminal escape sequences (a title change, a screen clear) and then fails
with one in its error, so a test can check that the CLI shows them as text instead of sending them to the terminal."""

print("set title \x1b]0;owned\x07 then clear \x1b[2J\x1b[H; rewrite\rfake line", flush=True)
raise RuntimeError("failing \x1b[8mhidden\x1b[0m")


def predict(text):
    return text
