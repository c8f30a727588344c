"""`python -m judgelab_operator`."""

from judgelab_operator.main import main

main()
