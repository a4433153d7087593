"""Reading OCR model output: dots.ocr layout JSON, repair, loops, Markdown, and the resize that frames bboxes.

Shared by every engine that talks to a vision-language model (vLLM now, Transformers next), so a page
reads the same whichever backend produced the tokens.
"""
