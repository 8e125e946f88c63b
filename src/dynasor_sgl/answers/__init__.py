"""Answers: extracting a final answer from text and deciding when two answers are the same."""
