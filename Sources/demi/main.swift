print("demi")
