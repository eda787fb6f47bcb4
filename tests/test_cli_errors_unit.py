from ttsr.errors import first_line


def test_first_line_of_a_message_and_of_a_traceback_inside_one():
    assert first_line(ValueError("bad value\nmore")) == "bad value"
    assert first_line(RuntimeError("")) == "RuntimeError"
    wrapped = RuntimeError(
        'Traceback (most recent call last):\n  File "x.py", line 1\nEOFError: Ran out of input'
    )
    assert first_line(wrapped) == "EOFError: Ran out of input"
