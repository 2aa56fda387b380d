"""Stage wiring for the command line: job lists, profiles and executors.

The library (`ramac/`), evaluation (`eval/`), reports and figures each own their logic;
this package only decides which runs to do, in which process, and in what order.
"""
