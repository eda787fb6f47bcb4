"""Where a searched study keeps its Optuna study: an RDB storage next to the MLflow store.

Default: ``optuna.db`` (SQLite) beside a ``sqlite:///`` MLflow store, else in the working
directory; ``--optuna-storage URL`` takes any RDB URL SQLAlchemy opens. The Optuna study is named
after the invocation (its run name), so ``optuna-dashboard URL`` lists one study per invocation
and ``--resume`` continues it. Problems raise ``PreflightError`` naming the flag.
"""

from __future__ import annotations

import os
from pathlib import Path

from ttsr.errors import first_line
from tune.study.preflight import PreflightError

FLAG = "--optuna-storage"
FILE_NAME = "optuna.db"
SQLITE_PREFIX = "sqlite:///"


def default_url(mlflow_uri: str) -> str:
    """``optuna.db`` beside a SQLite MLflow store; else in the working directory."""
    folder = Path.cwd()
    if mlflow_uri.startswith(SQLITE_PREFIX):  # an absolute path replaces the cwd in the join
        folder = (folder / mlflow_uri.removeprefix(SQLITE_PREFIX)).parent
    return f"{SQLITE_PREFIX}{folder / FILE_NAME}"


def resolve_url(given: str | None, mlflow_uri: str) -> str:
    """The storage URL to use, checked (``check_url``); SQLite paths made absolute."""
    return check_url(given if given is not None else default_url(mlflow_uri))


def check_url(url: str) -> str:
    """An RDB URL Optuna can use: SQLAlchemy parses it, knows the dialect and finds its driver;
    a SQLite file lies in a writable directory. Returns the URL with a SQLite path absolute."""
    import sqlalchemy.engine
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    example = "e.g. sqlite:////ABS/PATH/optuna.db or postgresql://USER@HOST/DB"
    try:
        parsed = sqlalchemy.engine.make_url(url)
        dialect = parsed.get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError):
        raise PreflightError(f"{FLAG} {url}: not an RDB URL SQLAlchemy knows ({example})") from None
    try:
        dialect.import_dbapi()
    except ImportError as e:
        driver = getattr(e, "name", None) or parsed.get_driver_name()
        raise PreflightError(
            f"{FLAG} {url}: its database driver is not installed ({driver})"
        ) from None
    if parsed.get_backend_name() != "sqlite":
        return url
    db = _check_sqlite(url, parsed.database)
    return parsed.set(database=str(db)).render_as_string(hide_password=False)


def _check_sqlite(url: str, database: str | None) -> Path:
    if not database or database == ":memory:":
        raise PreflightError(f"{FLAG} {url}: an in-memory database would be lost; give a file")
    db = Path.cwd() / Path(database).expanduser()
    if not db.parent.is_dir():
        raise PreflightError(f"{FLAG} {url}: directory {db.parent} does not exist")
    if db.exists():
        if not db.is_file() or not os.access(db, os.R_OK | os.W_OK):
            raise PreflightError(f"{FLAG} {url}: {db} is not a writable file")
    elif not os.access(db.parent, os.W_OK | os.X_OK):
        raise PreflightError(f"{FLAG} {url}: directory {db.parent} is not writable")
    return db


def connect(url: str, study_name: str, *, resuming: bool) -> None:
    """Open the storage (SQLite: creates the file) and check the study name: a new invocation
    must not take over an existing study, a resumed one continues its own."""
    import optuna

    try:
        storage = optuna.storages.RDBStorage(url)
        names = set(optuna.get_all_study_names(storage))
    except Exception as e:  # noqa: BLE001 - any failure means "cannot use it"
        raise PreflightError(f"{FLAG} {url}: cannot open ({first_line(e, 200)})") from None
    if study_name in names and not resuming:
        raise PreflightError(f"{FLAG} {url}: an Optuna study named {study_name!r} exists already")
    if study_name not in names and resuming:
        raise PreflightError(
            f"{FLAG} {url}: no Optuna study {study_name!r} there (the resumed invocation's)"
        )


def dashboard_command(url: str) -> str:
    """How to look at the study: optuna-dashboard (pip install optuna-dashboard)."""
    return f"optuna-dashboard {url} --host 127.0.0.1 --port 8080"
