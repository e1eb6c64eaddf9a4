"""The local web app (``hccrad serve``): a new patient's predicted response in the browser, offline."""
