import pytest

from cluster_rag import errors


@pytest.mark.parametrize(
    ("cls", "builtin"),
    [
        (errors.InvalidInputError, ValueError),
        (errors.EmptyTextError, ValueError),
        (errors.DuplicateIdError, ValueError),
        (errors.InvalidKError, ValueError),
        (errors.NotFittedError, ValueError),
        (errors.ModelMismatchError, ValueError),
        (errors.StoreNotFoundError, FileNotFoundError),
        (errors.StoreConnectionError, ConnectionError),
        (errors.UnknownTopicError, KeyError),
        (errors.UnknownDocumentError, KeyError),
        (errors.VersionError, LookupError),
        (errors.MissingDependencyError, ImportError),
        (errors.LabelingError, RuntimeError),
    ],
)
def test_tree(cls: type, builtin: type) -> None:
    assert issubclass(cls, errors.ClusterRagError)
    assert issubclass(cls, builtin)


def test_missing_dependency_names_pip_line() -> None:
    err = errors.missing_dependency("faiss", '"cluster-rag[faiss]"')
    assert 'pip install "cluster-rag[faiss]"' in str(err)


def test_unknown_topic_message_is_not_quoted() -> None:
    assert str(errors.UnknownTopicError("no topic named 'x'")) == "no topic named 'x'"
