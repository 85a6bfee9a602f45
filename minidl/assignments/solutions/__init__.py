"""Worked solutions, in the starters' file layout (a lecturer copies them in to see every task pass).

The grader never imports these: it grades the files in the student's folder.
"""
