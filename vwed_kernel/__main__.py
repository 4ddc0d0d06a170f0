"""``python -m vwed_kernel -f CONNECTION_FILE``: run a VWED kernel."""

from .launch import main

if __name__ == "__main__":
    main()
