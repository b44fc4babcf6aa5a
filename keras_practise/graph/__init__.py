"""Reading and rewriting Functional graphs: blocks, surgery, taps, sizes.

`flat_graph` is the only module in keras_practise that reads private Keras
attributes.
"""
