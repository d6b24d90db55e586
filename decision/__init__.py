"""The verdict: which candidate to choose, with the numbers that decided it, and its cautions."""
