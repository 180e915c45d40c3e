import pytest


@pytest.fixture(scope="session")
def wakeword_cache(tmp_path_factory):
    """One converted copy of the bundled Whisper per test session, in a temp cache dir."""
    path = tmp_path_factory.mktemp("wakeword-cache")
    patcher = pytest.MonkeyPatch()
    patcher.setenv("WAKEWORD_CACHE_DIR", str(path))
    yield path
    patcher.undo()
