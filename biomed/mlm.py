"""Masked-language-model pretraining pieces: corpus tokenizers and masking.

Tokenizers are trained on the corpus with Hugging Face `tokenizers` (each family says which kinds
it offers and how its corpus is pre-split), from an iterator over it
(so a corpus larger than memory is fine), and wrapped BERT-style ([CLS] ... [SEP], [MASK]):
- smiles: the atom-level regex pre-tokenizer (biomed/families/molecules/smiles.py) with a WordLevel vocabulary
  of the atoms and bonds seen, or BPE, whose merges stay inside a regex piece (so bracket atoms
  such as `[C@@H]` become one token and an unseen one falls back to its characters, not [UNK]);
- dna: overlapping k-mers (every k-mer over ACGTN, as DNABERT), or BPE over the bases as
  DNABERT-2 does;
- protein: one token per residue;
- text: WordPiece, as BERT.

Masking follows BERT: 15% of the non-special tokens are chosen, and of those 80% become [MASK],
10% a random token and 10% stay (Hugging Face's `DataCollatorForLanguageModeling`). With
overlapping k-mers a masked k-mer could be read off its neighbours, which share all but one
base, so DNA k-mers are masked in whole spans of `span` neighbouring tokens (DNABERT).
"""

from __future__ import annotations

from typing import Iterable

import torch

from biomed.families.sequence.tokens import SPECIAL_TOKENS, wrap_bert_style

# Fewer learned tokens than this is no vocabulary to pretrain on.
MIN_LEARNED_TOKENS = 2
IGNORE_INDEX = -100


class DegenerateVocabulary(ValueError):
    """A tokenizer trained on the corpus learned (almost) nothing."""


def train_tokenizer(family: str, kind: str, texts: Iterable[str], *, vocab_size: int, min_frequency: int = 1):
    """A BERT-style fast tokenizer for the family, trained on `texts` (an iterator is enough).

    Raises DegenerateVocabulary when fewer than `MIN_LEARNED_TOKENS` tokens were learned (an
    empty corpus, or one made of a single repeated symbol).
    """
    from biomed.families import get_family

    sequences = get_family(family)
    if kind not in sequences.tokenizer_kinds:
        raise ValueError(f"tokenizer {kind!r} is not one of {family}'s: {list(sequences.tokenizer_kinds)}")
    fixed = sequences.fixed_tokenizer(kind, kmer_size=None)
    if fixed is not None:
        return fixed
    from tokenizers import Tokenizer, decoders, models, normalizers, trainers

    specials = list(SPECIAL_TOKENS)
    if kind == "wordlevel":
        tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
        trainer = trainers.WordLevelTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=specials, show_progress=False)
    elif kind == "bpe":
        tok = Tokenizer(models.BPE(unk_token="[UNK]"))
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=specials, show_progress=False)
    else:
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=specials, show_progress=False)
    if sequences.pre_tokenizer is not None:
        tok.pre_tokenizer = sequences.pre_tokenizer()
    tok.train_from_iterator(texts, trainer=trainer)
    learned = tok.get_vocab_size() - len(specials)
    if learned < MIN_LEARNED_TOKENS:
        raise DegenerateVocabulary(
            f"the {kind} tokenizer learned {learned} token(s) from the corpus (at least {MIN_LEARNED_TOKENS} needed): "
            "the corpus is empty or one repeated symbol, or min_frequency is above every token's count"
        )
    return wrap_bert_style(tok)


def family_tokenizer(family: str, kind: str, texts: Iterable[str] = (), *, vocab_size: int = 0, min_frequency: int = 1, kmer_size: int = 6):
    """The pretraining tokenizer: k-mers and residues are fixed vocabularies; the rest are trained."""
    from biomed.families import get_family

    fixed = get_family(family).fixed_tokenizer(kind, kmer_size=kmer_size)
    if fixed is not None:
        return fixed
    return train_tokenizer(family, kind, texts, vocab_size=vocab_size, min_frequency=min_frequency)


def mask_tokens(
    input_ids: torch.Tensor, special: torch.Tensor, *, mask_id: int, vocab_size: int, probability: float = 0.15,
    span: int = 1, generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking of a padded batch: (inputs, labels), labels `IGNORE_INDEX` where not masked.

    `special` marks tokens never masked ([CLS], [SEP], padding). With `span` > 1, each token starts
    a span of `span` masked tokens with the chance that leaves a token masked at `probability`
    (1 - (1 - p)^span = probability, spans overlapping).
    """
    if span == 1:
        from transformers import DataCollatorForLanguageModeling

        # Hugging Face's own masking rule; it reads only the mask token and the vocabulary size.
        collator = DataCollatorForLanguageModeling(_MaskingVocabulary(mask_id, vocab_size), mlm_probability=probability)
        collator.generator = generator
        return collator.torch_mask_tokens(input_ids.clone(), special_tokens_mask=special)
    start_probability = 1.0 - (1.0 - probability) ** (1.0 / span)
    starts = torch.bernoulli(torch.full(input_ids.shape, start_probability), generator=generator).bool() & ~special
    chosen = torch.zeros_like(starts)
    for offset in range(span):
        chosen[:, offset:] |= starts[:, : starts.shape[1] - offset]
    chosen &= ~special
    labels = input_ids.clone()
    labels[~chosen] = IGNORE_INDEX
    inputs = input_ids.clone()
    replace = torch.bernoulli(torch.full(inputs.shape, 0.8), generator=generator).bool() & chosen
    inputs[replace] = mask_id
    randomise = torch.bernoulli(torch.full(inputs.shape, 0.5), generator=generator).bool() & chosen & ~replace
    inputs[randomise] = torch.randint(vocab_size, inputs.shape, generator=generator)[randomise]
    return inputs, labels


class _MaskingVocabulary:
    """What DataCollatorForLanguageModeling asks of a tokenizer while masking."""

    mask_token = "[MASK]"
    pad_token = "[PAD]"

    def __init__(self, mask_id: int, vocab_size: int):
        self._mask_id, self._size = mask_id, vocab_size

    def __len__(self) -> int:
        return self._size

    def convert_tokens_to_ids(self, token: str) -> int:
        return self._mask_id


def masked_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> tuple[int, int]:
    """(correct, masked) tokens of a batch."""
    chosen = labels != IGNORE_INDEX
    return int((logits.argmax(-1)[chosen] == labels[chosen]).sum()), int(chosen.sum())
