"""Data preparation: readers of the source datasets (``sources``), retrieval over Natural Questions
(``retrieval``: chunking, embeddings, FAISS, reranking; the stages ``retrieval_index`` and ``nq_rag``), the SFT
view and the SQuAD set (``sft``), easy fakes and the context restore (``negatives``), medium fakes
(``ner``), hard fakes (``hard_fakes``), teacher pairs (``teacher``; the two generation stages share
``generation``) and the curriculum pairs (``pairs``).  Each stage's settings are a config dataclass in the
module of the stage; the scripts under first_improvement/ and further_improvement/ generate their parsers
from them."""
