"""The classic tutorial's own script, as it is usually written (the baseline of the benchmarks).

LSTM(28 -> 64) + Linear(64 -> 10) on the last step; torchvision dataset with ToTensor()
per item; DataLoader(batch_size=32, shuffle=True, num_workers=4); Adam 1e-3; every 10
steps the model is tested on the first 200 test images (with autograd on, as the
tutorial does) and a line is printed. Only the data location and the number of epochs
are flags, so that it runs offline on this machine's copy of the data:

    python benchmarks/tutorial_script.py --data-dir ../shared/data/fashion-mnist --dataset fashion-mnist --epochs 1
"""

import argparse

import torch
import torchvision.datasets as dsets
import torchvision.transforms as transforms
from torch import nn

parser = argparse.ArgumentParser()
parser.add_argument("--data-dir", default="./mnist/")
parser.add_argument("--dataset", choices=["mnist", "fashion-mnist"], default="mnist")
parser.add_argument("--epochs", type=int, default=50)
args = parser.parse_args()

torch.manual_seed(2019)  # reproducible

# Hyper Parameters
EPOCH = args.epochs
BATCH_SIZE = 32
TIME_STEP = 28  # rnn time step / image height
INPUT_SIZE = 28  # rnn input size / image width
LR = 0.001  # learning rate
DOWNLOAD = False
Dataset = dsets.MNIST if args.dataset == "mnist" else dsets.FashionMNIST

train_data = Dataset(root=args.data_dir, train=True, transform=transforms.ToTensor(), download=DOWNLOAD)
train_loader = torch.utils.data.DataLoader(dataset=train_data, batch_size=BATCH_SIZE, shuffle=True, num_workers=4)

test_data = Dataset(root=args.data_dir, train=False, transform=transforms.ToTensor())
test_x = test_data.data.type(torch.FloatTensor)[:200] / 255.0  # shape (200, 28, 28) value in range(0,1)
test_y = test_data.targets.numpy()[:200]  # covert to numpy array


class RNN(nn.Module):
    def __init__(self):
        super(RNN, self).__init__()

        self.rnn = nn.LSTM(  # if use nn.RNN(), it hardly learns
            input_size=INPUT_SIZE,
            hidden_size=64,  # rnn hidden unit
            num_layers=1,  # number of rnn layer
            batch_first=True,  # input & output will has batch size as 1s dimension. e.g. (batch, time_step, input_size)
        )

        self.out = nn.Linear(64, 10)

    def forward(self, x):
        # x shape (batch, time_step, input_size)
        # r_out shape (batch, time_step, output_size)
        # h_n shape (n_layers, batch, hidden_size)
        # h_c shape (n_layers, batch, hidden_size)
        r_out, (h_n, h_c) = self.rnn(x, None)  # None represents zero initial hidden state

        # choose r_out at the last time step
        out = self.out(r_out[:, -1, :])
        return out


rnn = RNN()
print(rnn)

optimizer = torch.optim.Adam(rnn.parameters(), lr=LR)  # optimize all cnn parameters
loss_func = nn.CrossEntropyLoss()  # the target label is not one-hotted

# training and testing
for epoch in range(EPOCH):
    for step, (b_x, b_y) in enumerate(train_loader):  # gives batch data
        b_x = b_x.view(-1, 28, 28)  # reshape x to (batch, time_step, input_size)

        output = rnn(b_x)  # rnn output
        loss = loss_func(output, b_y)  # cross entropy loss
        optimizer.zero_grad()  # clear gradients for this training step
        loss.backward()  # backpropagation, compute gradients
        optimizer.step()  # apply gradients

        if step % 10 == 0:
            test_output = rnn(test_x)  # (samples, time_step, input_size)
            pred_y = torch.max(test_output, 1)[1].data.numpy()
            accuracy = float((pred_y == test_y).astype(int).sum()) / float(test_y.size)
            print("Epoch:", epoch, "train loss: %.4f" % loss.data.numpy(), "test accuracy: %.2f" % accuracy)
