"""HTTP handlers, one module per API area. Services arrive through
``initialize(**kwargs)`` from the route table (see ``routes.make_app``)."""
