"""``python -m hood`` (and ``torchrun -m hood``) enters the same app as the ``hood`` script."""

from hood.cli.app import main

if __name__ == "__main__":
    main()
