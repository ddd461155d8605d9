"""What ``spanlytics demo`` runs, shipped in the package so that it works from any install.

* :mod:`spanlytics.demo.service` - the FastAPI items service (also ``examples/fastapi_service``)
* :mod:`spanlytics.demo.data` - its demo consumers, API keys, users and item store (shared with
  the Flask and Starlette examples)
* :mod:`spanlytics.demo.traffic` - the request mix the demo sends
* :mod:`spanlytics.demo.run` - start the service under uvicorn, send the traffic, stop it, report

It needs FastAPI and uvicorn: ``pip install 'spanlytics[demo]'``. Nothing here is imported by
``import spanlytics``.
"""
