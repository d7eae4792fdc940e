def pytest_addoption(parser):
    parser.addoption("--sim-seeds", type=int, default=200)
